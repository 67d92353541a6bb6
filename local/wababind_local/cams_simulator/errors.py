"""CAMS's documented error codes, and the API gateway's refusals before an action runs."""

from __future__ import annotations

# Error codes and messages, from:
# - ChatappBindWaba (its own codes, all HTTP 400):
#   https://www.alibabacloud.com/help/en/chatapp/developer-reference/api-cams-2020-06-06-chatappbindwaba
# - CAMS public error codes:
#   https://help.aliyun.com/en/chatapp/developer-reference/api-cams-2020-06-06-errorcodes
# - Alibaba Cloud OpenAPI gateway client errors (Missing{Name}, InvalidAccessKeyId.NotFound,
#   InvalidTimeStamp.*, SignatureNonceUsed, SignatureDoesNotMatch, Throttling.User):
#   https://help.aliyun.com/en/document_detail/434846.html, https://developer.aliyun.com/ask/278265
# - server errors InternalError 500, ServiceUnavailable 503:
#   https://help.aliyun.com/en/dns/error-code
# - MissingSecurityToken: https://github.com/denverdino/aliyungo/issues/204
DOCUMENTED_ERRORS: dict[str, tuple[int, str]] = {
    "Ram.PermissionDeny": (400, "You are not authorized to perform the operation."),
    "Product.Unsubscript": (400, "You have not subscribed to the specified product."),
    "Unknown.ResourceOwnerId": (400, "The resource does not belong to the current user."),
    "System.LimitControl": (400, "The system is under flow control."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "Throttling.Api": (400, "Request was denied due to api flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "999999": (400, "System Exception. Please refresh the page and try again"),
    "ERR-FB-001": (
        400,
        "Unsupported get request. Does not exist, cannot be loaded due to missing permissions, "
        "Or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api.",
    ),
    "ERR-OPERATION-MAAP-0060": (400, "The subscriber has not bind WABA."),
    "ERR-COMMON-001": (500, "System exception, please contact administrator."),
    "CHAT.APIError": (500, "You are not authorized to do this operation."),
}


_GATEWAY_ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "MissingSecurityToken": (400, "SecurityToken is mandatory for this action."),
    "InvalidSecurityToken.Malformed": (400, "Specified SecurityToken is malformed."),
    "InvalidSecurityToken.MismatchWithAccessKey": (
        400,
        "Specified SecurityToken mismatch with the AccessKey.",
    ),
    "InvalidSignatureMethod": (400, "Specified signature method is not valid."),
    "InvalidSignatureVersion": (400, "Specified signature version is not valid."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
}


QUOTA_CODE = "System.LimitControl"


class _Refusal(Exception):
    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        known_status, known_message = _GATEWAY_ERRORS.get(code, (400, code))
        super().__init__(code)
        self.code = code
        self.status = status or known_status
        self.message = message or known_message
