"""keyledger's application layer: services that orchestrate the domain and declare the ports they need."""
