select
    id as payment_id,
    order_id,
    method,
    status,
    amount_cents,
    {{ cents_to_dollars('amount_cents') }} as amount,
    {{ to_utc_timestamp('created_at') }} as created_at,
    {{ to_utc_timestamp('updated_at') }} as updated_at,
    _dlt_load_id as load_id
from {{ source('shop', 'payments') }}
