-- PostgreSQL schema for examples/dbproxy.yaml: run it directly against the
-- database (psql -f examples/schema.sql), not through the proxy.
-- Encrypted columns are bytea: dbproxy stores ciphertext there.
CREATE TABLE users (
    id     bigserial PRIMARY KEY,
    name   text,
    email  bytea,   -- deterministic text: equality lookups work
    ssn    bytea,   -- randomized text
    salary bytea    -- randomized bigint
);
CREATE INDEX users_email ON users (email);
