"""Talking to the local Postfix installation: reading its parameters and tables."""
