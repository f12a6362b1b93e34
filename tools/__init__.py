"""Tool definitions, argument validation and plans (torch-free)."""
