"""Local emulators of upstream LLM provider APIs, used by the test-suite."""
