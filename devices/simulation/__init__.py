"""Protocol-accurate device simulators and the synthetic patient that drives them."""
