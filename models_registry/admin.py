"""Django admin: the product's face for staff and auditors."""
