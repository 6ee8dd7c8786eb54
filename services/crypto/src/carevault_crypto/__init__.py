"""carevault crypto surface."""
