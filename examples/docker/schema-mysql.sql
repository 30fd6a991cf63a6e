-- MariaDB / MySQL schema of the example (docker-compose.yml, make demo).
-- Encrypted columns are VARBINARY: dbproxy stores ciphertext there
-- (plaintext + 35 bytes randomized, + 23 deterministic).
CREATE TABLE users (
    id    bigint AUTO_INCREMENT PRIMARY KEY,
    name  text NOT NULL,
    email varbinary(512),
    ssn   varbinary(512),
    KEY users_email (email)
);
