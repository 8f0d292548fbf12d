//! History storage (placeholder, being written).
