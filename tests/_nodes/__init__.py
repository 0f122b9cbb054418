"""Helper programs that tests run as real child processes."""
