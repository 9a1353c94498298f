-- One row per order with what was paid for it: successful payments count, refunds do not.
with paid as (
    select
        order_id,
        sum(case when status = 'success' then amount else 0 end) as amount_paid,
        sum(case when status = 'refunded' then amount else 0 end) as amount_refunded,
        max(load_id) as payments_load_id
    from {{ ref('stg_payments') }}
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.status,
    coalesce(p.amount_paid, 0) as amount_paid,
    coalesce(p.amount_refunded, 0) as amount_refunded,
    -- The latest raw load that touched this order or its payments (drives daily_revenue).
    case
        when p.payments_load_id > o.load_id then p.payments_load_id else o.load_id
    end as load_id
from {{ ref('stg_orders') }} as o
left join paid as p on o.order_id = p.order_id
