//! Portico's benchmarks. See `bench/README.md`.
