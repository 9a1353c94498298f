{#- An integer amount of cents as an exact decimal of dollars. DuckDB's `/` on decimals returns a
    DOUBLE (money would be summed in floating point), so the division comes first and the decimal
    cast last, which gives the same exact result on every warehouse. -#}
{% macro cents_to_dollars(column_name, scale=2) -%}
    {{ return(adapter.dispatch('cents_to_dollars')(column_name, scale)) }}
{%- endmacro %}

{% macro default__cents_to_dollars(column_name, scale) -%}
    cast({{ column_name }} / 100 as decimal(18, {{ scale }}))
{%- endmacro %}
