"""Adapters to other frameworks (LangChain, HTTP)."""
