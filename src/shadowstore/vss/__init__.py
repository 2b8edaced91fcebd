"""The shadow-copy framework (the VSS model): writers, a requestor, providers. See docs/architecture.md."""
