"""The bedside gateway, composed from devices, media and the signaling client."""
