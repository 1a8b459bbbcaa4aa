"""The embedded Triton server, the NGC container entry point and the watchdog: they read repositories, never write them."""
