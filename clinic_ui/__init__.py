"""The clinic browser application (HTML/CSS/JS with ja/ko/en translations), served by the
signaling server."""
