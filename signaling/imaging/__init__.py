"""DICOM in the consultation, the server's side (issue 13): multipart framing
(:mod:`.multipart`), what pydicom reads from a file (:mod:`.dicom`), STOW-RS checks and
answers (:mod:`.stow`), QIDO-RS matching and DICOM JSON (:mod:`.qido`), where files live
(:mod:`.files`) and the renderer the server is given (:mod:`.renderer`). The routes are in
``signaling.server.routes_imaging`` and ``routes_dicomweb``."""
