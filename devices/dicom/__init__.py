"""DICOM input at the bedside: a Storage SCP, the checks an instance passes before anything
is forwarded, PS3.15 de-identification, the on-disk spool and the STOW-RS forwarder.

- :mod:`devices.dicom.contexts`: the storage classes and transfer syntaxes accepted, the
  DIMSE statuses this package answers with.
- :mod:`devices.dicom.check`: sans-I/O: a Part-10 file in, a verdict out (parse, pixel data,
  its size, the classes); each accepted instance hashed (SHA-256).
- :mod:`devices.dicom.deidentify`: the Basic Application Level Confidentiality Profile
  (dicom-anonymizer's Table E.1-1) with UIDs remapped per consultation; burned-in annotation.
- :mod:`devices.dicom.scp`: the Storage SCP with Verification (pynetdicom, in its own
  threads), handing instances to asyncio through a bounded queue.
- :mod:`devices.dicom.spool`: accepted instances kept on disk until the server took them.
- :mod:`devices.dicom.stow`: STOW-RS requests and answers, and the forwarder task.
- :mod:`devices.dicom.secondary`: sans-I/O: a frame of a live imaging source (an ultrasound's
  video output through a capture device) as a Secondary Capture Image.
- :mod:`devices.dicom.pacs`: the site's PACS: C-FIND of studies, C-GET of one.
"""
