"""`make reliability`: the fault, abuse and soak run that writes docs/RELIABILITY.md."""
