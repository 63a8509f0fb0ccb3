"""Alarms at the device level: what is wrong, how urgent, and since when.

- :mod:`devices.alarms.conditions`: the stable keys of alarm conditions (``spo2_low``,
  ``probe_off``, ``disconnected``...), shared by the codecs that decode device alarms and the
  limit engine.
- :mod:`devices.alarms.limits`: the alarm limits (adult defaults per parameter, the delay and
  hysteresis of each) and how a change to them is checked.
- :mod:`devices.alarms.engine`: :class:`~devices.alarms.engine.AlarmEngine`, sans-I/O: device
  events and a clock in, alarm records (started, changed, ended, acknowledged) out.
- :mod:`devices.alarms.reporting`: what a decoder uses to report a device's alarm list.
- :mod:`devices.alarms.notify`: typed notification events with many handlers.

The event type codecs emit (:class:`~devices.model.DeviceAlarms`) and the priorities and
kinds (:class:`~devices.model.AlarmPriority`, :class:`~devices.model.AlarmKind`) live in
:mod:`devices.model` with the other device events.
"""
