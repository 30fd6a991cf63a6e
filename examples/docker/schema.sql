-- PostgreSQL schema of the example (docker-compose.yml, make demo).
-- Encrypted columns are bytea: dbproxy stores ciphertext there.
CREATE TABLE users (
    id    bigserial PRIMARY KEY,
    name  text NOT NULL,
    email bytea,
    ssn   bytea
);
CREATE INDEX users_email ON users (email);
