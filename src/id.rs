//! Session ids (placeholder).
