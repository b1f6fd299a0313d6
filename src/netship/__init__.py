"""netship: ship Kubernetes network add-ons to clusters that cannot reach the internet."""

__version__ = "0.1.0"
