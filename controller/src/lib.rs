//! Portico's controller: sources → translate → publish.
