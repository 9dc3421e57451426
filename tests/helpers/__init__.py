"""What tests share: fixtures (loaded by the root conftest), factories and test vocabulary."""
