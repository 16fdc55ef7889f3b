"""Sandbox backends behind one interface (`base.Runtime`); nothing outside knows which runs."""
