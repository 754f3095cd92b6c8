"""Provider adapters: pure Python, no Django. Standard request/response types live in `base`."""
