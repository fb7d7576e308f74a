"""Sans-I/O tests of the HTTP decisions (no server)."""
