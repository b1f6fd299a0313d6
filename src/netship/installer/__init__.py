"""Package data: the POSIX sh offline installer copied into every per-arch bundle."""
