"""The open platform's gateway methods beyond sign-in.

``alipay.open.app.alipaycert.download`` serves Alipay's certificates by SN after
a rotation; ``alipay.open.app.openid.uidtoopenid.batchquery`` converts user_ids to
open_ids, as in Alipay's OpenID migration.  Both take the parameters the official
SDKs' model classes name, and answer the fields their response classes name.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flask_alipay.protocol import SUCCESS_CODE, node_name
from flask_alipay.rotation import CERT_DOWNLOAD_METHOD

from .checks import invalid, missing
from .ids import new_open_id
from .methods import Answer, Call, Method, Methods

__all__ = ["METHODS", "UID_TO_OPENID_METHOD"]

#: Converts user_ids to open_ids: ``AlipayOpenAppOpenidUidtoopenidBatchqueryRequest`` in
#: the SDKs, whose model has one field, ``user_id_list``, and whose response has one,
#: ``open_id_list`` (entries of ``user_id``, ``open_id``, ``union_id``).
UID_TO_OPENID_METHOD = "alipay.open.app.openid.uidtoopenid.batchquery"


def cert_download(methods: Methods, call: Call) -> Answer:
    """An Alipay certificate by SN, as the base64 of its PEM and its intermediate's."""
    if methods.pki is None:
        raise invalid("isv.invalid-method", "不存在的方法名")
    try:
        business = json.loads(call.params.get("biz_content") or "{}")
    except ValueError:
        business = None
    sn = business.get("alipay_cert_sn") if isinstance(business, dict) else None
    if not isinstance(sn, str) or not sn:
        raise missing("isv.missing-alipay-cert-sn", "缺少支付宝公钥证书序列号")
    with methods.state.lock:
        chain = methods.pki.alipay_chains.get(sn)
    if chain is None:
        raise invalid("isv.alipay-cert-not-exist", "支付宝公钥证书不存在")
    content = base64.b64encode(chain.encode("ascii")).decode("ascii")
    data = {"code": SUCCESS_CODE, "msg": "Success", "alipay_cert_content": content}
    return Answer(node_name(CERT_DOWNLOAD_METHOD), data)


def uid_to_openid(methods: Methods, call: Call) -> Answer:
    """user_id -> open_id, as in Alipay's OpenID migration.

    The SDKs' response class names no field for ids that cannot be converted, so
    an unknown user_id is simply absent from ``open_id_list``.  The SDKs state no
    maximum length for the list, so none is imposed here.
    """
    try:
        business = json.loads(call.params.get("biz_content") or "{}")
    except ValueError:
        business = None
    user_ids = business.get("user_id_list") if isinstance(business, dict) else None
    if (
        not user_ids
        or not isinstance(user_ids, list)
        or not all(isinstance(u, str) for u in user_ids)
    ):
        raise invalid("isv.invalid-parameter", "user_id_list参数不正确")
    found: list[dict[str, str]] = []
    with methods.state.lock:
        by_user_id = {u.user_id: u for u in methods.state.users.values() if u.user_id}
        for user_id in user_ids:
            user = by_user_id.get(user_id)
            if user is None:
                continue
            if user.open_id is None:
                user.open_id = new_open_id()  # the account's id for this app, from now on
            entry = {"user_id": user_id, "open_id": user.open_id}
            if user.union_id:
                entry["union_id"] = user.union_id
            found.append(entry)
    data: dict[str, Any] = {"code": SUCCESS_CODE, "msg": "Success", "open_id_list": found}
    return Answer(node_name(UID_TO_OPENID_METHOD), data)


METHODS: dict[str, Method] = {
    CERT_DOWNLOAD_METHOD: Method(cert_download),
    UID_TO_OPENID_METHOD: Method(uid_to_openid),
}
