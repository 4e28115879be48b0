"""The one pin map of the camera unit (BCM GPIO numbers).

Net names here are the net labels in ``hw/schematics/``; a test fails when they disagree.
Nothing else in the code base names a pin number.
"""

from __future__ import annotations

from types import MappingProxyType

#: Net label -> BCM GPIO number, for everything the firmware drives through gpiozero.
GPIO = MappingProxyType(
    {
        "BTN_RECORD": 17,  # header pin 11, active low, internal pull-up
        "BTN_MARK": 27,  # header pin 13, active low, internal pull-up
        "BTN_FUNCTION": 22,  # header pin 15, active low, internal pull-up
        "LED_RED": 5,  # header pin 29, recording
        "LED_GREEN": 6,  # header pin 31, ready / docked
        "LED_AMBER": 13,  # header pin 33, fault / stoppage
        "BUZZER": 26,  # header pin 37, drives the buzzer/vibration transistor
        "FUEL_ALERT": 4,  # header pin 7, fuel gauge ALRT (open drain, active low)
        "RTC_INT": 24,  # header pin 18, RTC INT/SQW (open drain, active low)
    }
)

#: Buses the kernel drives (device tree overlays); listed so the schematic test checks them.
BUSES = MappingProxyType(
    {
        "I2C_SDA": 2,  # header pin 3: RTC (DS3231, 0x68) and fuel gauge (MAX17048, 0x36)
        "I2C_SCL": 3,  # header pin 5
        "I2S_BCLK": 18,  # header pin 12: microphone and amplifier bit clock
        "I2S_LRCLK": 19,  # header pin 35
        "I2S_DIN": 20,  # header pin 38: microphone data into the Pi
        "I2S_DOUT": 21,  # header pin 40: Pi data out to the amplifier
    }
)

I2C_ADDRESSES = MappingProxyType({"RTC": 0x68, "FUEL_GAUGE": 0x36})

ALL_NETS = MappingProxyType({**GPIO, **BUSES})
