"""Read models built from the event stream: the key-state view, the alias table and the key event index."""
