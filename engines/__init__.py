"""Inference engines of cyc, one module each, registered under the cyc.engines entry-point group."""
