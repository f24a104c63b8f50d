"""A small TLS PKI with `cryptography`: a CA, server and client certificates, checks."""
