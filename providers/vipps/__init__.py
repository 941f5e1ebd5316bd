"""Vipps MobilePay ePayment API v1: request builders, response parsers, webhook signatures, event-log parser."""
