"""Aids for trying speechrole without real models and for testing it; nothing here measures anything."""
