"""The application services between the domain and the edges (runtime, web, CLI)."""
