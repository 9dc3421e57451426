"""Tests of the trainer library (trainer/)."""
