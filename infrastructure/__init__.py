"""Settings, storage wiring, root-key providers, the backing-key and credential stores, the clock."""
