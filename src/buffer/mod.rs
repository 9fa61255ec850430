//! Buffers (placeholder).
