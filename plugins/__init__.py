"""hookloop's built-in plugins. Each implements public hooks only; a third-party plugin can do the same."""
