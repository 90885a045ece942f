"""Agents: the MEow agent (one EBFlow network as actor and critic)."""
