//! Harnesses for Portico end-to-end tests.
