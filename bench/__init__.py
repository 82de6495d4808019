"""Load benchmark: oneproxy against the direct upstream, the floor and LiteLLM (`make bench`)."""
