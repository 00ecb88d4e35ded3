"""Who is asking: accounts, sessions, access and refresh tokens, revocation, passwords."""
