"""The embedded MQTT 5 broker: a fallback when no Mosquitto is installed."""
