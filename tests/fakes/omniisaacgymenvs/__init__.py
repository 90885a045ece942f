"""Fake OmniIsaacGymEnvs 2023.1.1 package."""
