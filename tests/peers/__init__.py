"""Test peers: servers we run beside the orchestrator so that something outside the project
accepts or refuses what it rotates (``auth0``: an emulator of Auth0's Management API and token
endpoint; ``oidc``: node oidc-provider).

This file must stay: without it pytest's default import mode puts ``tests/peers`` itself on
``sys.path``, and the emulator package ``tests/peers/auth0`` then shadows the official SDK
``auth0`` (auth0-python) that ``test_auth0_emulator_sdk.py`` drives it with.
"""
