"""Provider adapters: pure functions from the caller's request to the
upstream's, and from the upstream's answer back."""
