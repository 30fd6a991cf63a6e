//go:build !purego

#include "textflag.h"

// AES-256 key expansion, two AES-256 blocks and one GHASH multiplication
// with AES-NI and PCLMULQDQ, for the per-message cipher of XAES-256-GCM
// (xaes_ni.go). The key expansion follows the standard library's
// expandKeyAsm (crypto/internal/fips140/aes), restricted to 256-bit keys
// and the encryption schedule; the multiplication is the bit-reflected
// carry-less multiplication and reduction of Intel's white paper "Intel
// Carry-Less Multiplication Instruction and its Usage for Computing the
// GCM Mode" (Gueron, Kounavis), figure 5.
//
// Each function zeroes, before it returns, every vector register it wrote
// that could hold key material or state derived from it (X10 holds only
// the byte-swap mask). X15 (the Go ABI's zero register) is never written.

// EXPAND derives the next round key into upd from upd and the
// AESKEYGENASSIST of gen, lane sel of it (0xff: RotWord(SubWord) xor rcon,
// for the even round keys; 0xaa: SubWord alone, for the odd ones), and
// stores it at BX. X4 carries state between steps (zero at the start).
#define EXPAND(rcon, sel, gen, upd) \
	AESKEYGENASSIST $rcon, gen, X1; \
	PSHUFD          $sel, X1, X1;   \
	SHUFPS          $0x10, upd, X4; \
	PXOR            X4, upd;        \
	SHUFPS          $0x8c, upd, X4; \
	PXOR            X4, upd;        \
	PXOR            X1, upd;        \
	MOVUPS          upd, (BX);      \
	ADDQ            $0x10, BX

#define EXPAND_A(rcon) EXPAND(rcon, 0xff, X2, X0)
#define EXPAND_B EXPAND(0x00, 0xaa, X0, X2)

// func aes256Expand(key *[32]byte, xk *[240]byte)
TEXT ·aes256Expand(SB), NOSPLIT, $0-16
	MOVQ   key+0(FP), AX
	MOVQ   xk+8(FP), BX
	MOVUPS (AX), X0
	MOVUPS 16(AX), X2
	MOVUPS X0, (BX)
	MOVUPS X2, 16(BX)
	ADDQ   $0x20, BX
	PXOR   X4, X4
	EXPAND_A(0x01)
	EXPAND_B
	EXPAND_A(0x02)
	EXPAND_B
	EXPAND_A(0x04)
	EXPAND_B
	EXPAND_A(0x08)
	EXPAND_B
	EXPAND_A(0x10)
	EXPAND_B
	EXPAND_A(0x20)
	EXPAND_B
	EXPAND_A(0x40)
	PXOR   X0, X0
	PXOR   X1, X1
	PXOR   X2, X2
	PXOR   X4, X4
	RET

// ENC2 runs one AES round on X0 and X2 with the round key at off(AX).
#define ENC2(off) \
	MOVUPS off(AX), X1; \
	AESENC X1, X0;      \
	AESENC X1, X2

// func aes256Encrypt2(xk *[240]byte, dst, src *[32]byte)
TEXT ·aes256Encrypt2(SB), NOSPLIT, $0-24
	MOVQ       xk+0(FP), AX
	MOVQ       dst+8(FP), DX
	MOVQ       src+16(FP), BX
	MOVUPS     (BX), X0
	MOVUPS     16(BX), X2
	MOVUPS     (AX), X1
	PXOR       X1, X0
	PXOR       X1, X2
	ENC2(16)
	ENC2(32)
	ENC2(48)
	ENC2(64)
	ENC2(80)
	ENC2(96)
	ENC2(112)
	ENC2(128)
	ENC2(144)
	ENC2(160)
	ENC2(176)
	ENC2(192)
	ENC2(208)
	MOVUPS     224(AX), X1
	AESENCLAST X1, X0
	AESENCLAST X1, X2
	MOVUPS     X0, (DX)
	MOVUPS     X2, 16(DX)
	PXOR       X0, X0
	PXOR       X1, X1
	PXOR       X2, X2
	RET

// func gfmul(y, h *[16]byte)
TEXT ·gfmul(SB), NOSPLIT, $0-16
	MOVQ  y+0(FP), AX
	MOVQ  h+8(FP), BX
	MOVOU (AX), X0
	MOVOU (BX), X1
	MOVOU bswapMask<>(SB), X10
	PSHUFB X10, X0
	PSHUFB X10, X1

	// <X6:X3> = X0 · X1 (carry-less, 256 bits)
	MOVOU     X0, X3
	PCLMULQDQ $0x00, X1, X3
	MOVOU     X0, X4
	PCLMULQDQ $0x10, X1, X4
	MOVOU     X0, X5
	PCLMULQDQ $0x01, X1, X5
	MOVOU     X0, X6
	PCLMULQDQ $0x11, X1, X6
	PXOR      X5, X4
	MOVOU     X4, X5
	PSRLO     $8, X4
	PSLLO     $8, X5
	PXOR      X5, X3
	PXOR      X4, X6

	// <X6:X3> <<= 1 (the operands are bit-reflected)
	MOVOU X3, X7
	MOVOU X6, X8
	PSLLL $1, X3
	PSLLL $1, X6
	PSRLL $31, X7
	PSRLL $31, X8
	MOVOU X7, X9
	PSLLO $4, X8
	PSLLO $4, X7
	PSRLO $12, X9
	POR   X7, X3
	POR   X8, X6
	POR   X9, X6

	// reduction modulo x^128 + x^7 + x^2 + x + 1, first phase
	MOVOU X3, X7
	MOVOU X3, X8
	MOVOU X3, X9
	PSLLL $31, X7
	PSLLL $30, X8
	PSLLL $25, X9
	PXOR  X8, X7
	PXOR  X9, X7
	MOVOU X7, X8
	PSLLO $12, X7
	PSRLO $4, X8
	PXOR  X7, X3

	// second phase
	MOVOU X3, X2
	MOVOU X3, X4
	MOVOU X3, X5
	PSRLL $1, X2
	PSRLL $2, X4
	PSRLL $7, X5
	PXOR  X4, X2
	PXOR  X5, X2
	PXOR  X8, X2
	PXOR  X2, X3
	PXOR  X3, X6

	PSHUFB X10, X6
	MOVOU  X6, (AX)
	PXOR   X0, X0
	PXOR   X1, X1
	PXOR   X2, X2
	PXOR   X3, X3
	PXOR   X4, X4
	PXOR   X5, X5
	PXOR   X6, X6
	PXOR   X7, X7
	PXOR   X8, X8
	PXOR   X9, X9
	RET

// bswapMask reverses the 16 bytes of a register (PSHUFB).
DATA bswapMask<>+0x00(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x08(SB)/8, $0x0001020304050607
GLOBL bswapMask<>(SB), RODATA|NOPTR, $16
