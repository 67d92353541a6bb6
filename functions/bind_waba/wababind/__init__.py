"""wababind: bind WhatsApp Business Accounts to Alibaba Cloud CAMS from Function Compute."""
