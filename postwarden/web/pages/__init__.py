"""The console's pages, one module per group; each exports ``ROUTES`` for the application."""
