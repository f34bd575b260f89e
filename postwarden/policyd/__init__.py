"""postwarden-policyd: Postfix policy delegation and socketmap lookups from one process."""
